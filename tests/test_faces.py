import cv2
import numpy as np
import pytest

from muflow_cli.choices import ALIGNED_CONVENTIONS
from muflow_cli.faces.align import align, aligned_face, aligned_landmarks, similarity, template
from muflow_cli.faces.detect import FaceDetector
from muflow_cli.faces.options import FaceFinding
from muflow_cli.faces.stage import faces_in_file


def test_scrfd_finds_the_six_faces_of_t1(face_detector, t1_rgb):
    faces = face_detector.detect(t1_rgb)
    assert len(faces) == 6
    for f in faces:
        x1, y1, x2, y2 = f.box
        assert f.det_score > 0.5
        # landmarks lie inside their box
        assert np.all((f.landmarks[:, 0] > x1) & (f.landmarks[:, 0] < x2))
        assert np.all((f.landmarks[:, 1] > y1) & (f.landmarks[:, 1] < y2))
        assert 60 < f.size_px < 250


def test_yunet_finds_the_same_faces(face_detector, t1_rgb):
    ref = face_detector.detect(t1_rgb)
    faces = FaceDetector("yunet").detect(t1_rgb)
    assert len(faces) == 6
    centres = np.array([f.landmarks[2] for f in ref])  # nose tips
    for f in faces:
        assert np.min(np.linalg.norm(centres - f.landmarks[2], axis=1)) < 0.15 * f.size_px


def test_similarity_recovers_a_known_transform():
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 200, (5, 2))
    a, t = 0.3, np.array([12.0, -7.0])
    R = 1.7 * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    M = similarity(src, src @ R.T + t)
    np.testing.assert_allclose(M[:, :2], R, atol=1e-9)
    np.testing.assert_allclose(M[:, 2], t, atol=1e-7)


@pytest.mark.parametrize("zoom", [1.0, 3.0])
def test_aligned_crop_puts_landmarks_on_the_template(face_detector, astronaut, zoom):
    """Re-detecting on the aligned crop finds the landmarks where the template puts them.

    zoom=3 makes a face far larger than the crop, exercising the area-averaging shrink path.
    """
    img = cv2.resize(astronaut, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_CUBIC) if zoom != 1 else astronaut
    face = face_detector.detect(img)[0]
    crop, scale, _ = align(img, face.landmarks, size=256, context=1.5)
    assert crop.shape == (256, 256, 3) and crop.dtype == np.uint8
    if zoom > 1:
        assert scale < 0.75
    M = similarity(face.landmarks, template(256, 1.5))
    expected = face.landmarks @ M[:, :2].T + M[:, 2]
    # A similarity cannot fit 5 points of a real face exactly; the least-squares residual stays small.
    assert np.linalg.norm(expected - template(256, 1.5), axis=1).max() < 0.06 * 256
    again = face_detector.detect(crop)
    assert again, "no face found on the aligned crop"
    err = np.linalg.norm(again[0].landmarks - expected, axis=1)
    assert err.max() < 0.02 * 256, err  # the crop shows the landmarks where the transform put them


def test_faces_in_file_reports_instead_of_raising(tmp_path, face_detector):
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    res = faces_in_file(bad, face_detector, FaceFinding())
    assert res.status == "unreadable" and "not an image" in res.message
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((200, 300, 3), 200, np.uint8))
    res = faces_in_file(blank, face_detector, FaceFinding())
    assert res.status == "no_face" and res.faces == [] and res.image_size == (300, 200)
    assert res.message == "no face found"  # 3:2, not the shape of a face crop
    square = tmp_path / "square.png"
    cv2.imwrite(str(square), np.full((200, 220, 3), 200, np.uint8))
    assert "--aligned" in faces_in_file(square, face_detector, FaceFinding()).message  # could be one aligned face
    wide = tmp_path / "wide.png"
    cv2.imwrite(str(wide), np.full((200, 1800, 3), 200, np.uint8))
    assert faces_in_file(wide, face_detector, FaceFinding()).message == "no face found"


# --- issue #11: faces of every size relative to the frame ----------------------------------


@pytest.fixture(scope="module")
def yunet():
    return FaceDetector("yunet")


@pytest.fixture(scope="module")
def truth(t1_rgb, astronaut):
    """The 7 faces of the two photos, found on the whole photo: (image, face)."""
    det = FaceDetector("scrfd", mode="single")
    return [(img, f) for img in (t1_rgb, astronaut) for f in det.detect(img)]


def tight_crop(image, face, margin):
    """The face box widened by ``margin`` about its centre (clipped); and the crop's top-left."""
    c = (face.box[:2] + face.box[2:]) / 2
    half = (face.box[2:] - face.box[:2]) * margin / 2
    x0, y0 = np.maximum(np.round(c - half), 0).astype(int)
    x1, y1 = np.round(c + half).astype(int)
    return image[y0:y1, x0:x1], np.array([x0, y0], float)


@pytest.mark.parametrize("kind", ["scrfd", "yunet"])
@pytest.mark.parametrize("margin", [1.0, 1.15])
def test_frame_filling_faces_are_found_and_mapped_back(kind, margin, truth, face_detector, yunet):
    """Tight crops (the face IS the frame) at native size and at 256 px: each face found, where it is."""
    det = face_detector if kind == "scrfd" else yunet
    for image, face in truth:
        crop, origin = tight_crop(image, face, margin)
        # the same detector's landmarks on the whole photo (YuNet and SCRFD differ on turned faces)
        ref = min(det.detect(image), key=lambda f: np.linalg.norm(f.landmarks[2] - face.landmarks[2]))
        for s in (1.0, 256 / max(crop.shape[:2])):
            img = crop if s == 1 else cv2.resize(crop, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
            found = det.detect(img)
            assert len(found) == 1, (kind, margin, s, len(found))
            expected = (ref.landmarks - origin) * s  # the whole photo's landmarks, in crop pixels
            err = np.linalg.norm(found[0].landmarks - expected, axis=1).max()
            # YuNet's own landmarks wander up to ~15% of the face between a crop and the photo, even
            # where its normal pass finds the face (margin 1.3-1.6): a detector trait, not the mapping.
            assert err < (0.1 if kind == "scrfd" else 0.2) * face.size_px * s, (kind, margin, s, err)
            assert np.all(found[0].landmarks >= -2) and np.all(found[0].landmarks <= np.array(img.shape[1::-1]) + 2)


def test_single_mode_reproduces_the_old_miss(truth):
    """The old one-pass detector misses tight crops: the benchmark's "before" is real."""
    single = FaceDetector("scrfd", mode="single")
    misses = sum(not single.detect(tight_crop(img, f, 1.0)[0]) for img, f in truth)
    assert misses >= 5


def test_ordinary_photo_keeps_exactly_its_faces(face_detector, t1_rgb):
    """The extra passes add no false faces, and t1's six faces keep the normal pass's landmarks."""
    old = FaceDetector("scrfd", mode="single").detect(t1_rgb)
    new = face_detector.detect(t1_rgb)
    assert len(new) == 6
    for f in new:
        err = min(np.linalg.norm(f.landmarks - o.landmarks, axis=1).max() for o in old)
        assert err < 1.0  # same detections (the canvas is 640x448 now, not 640x640)


def test_small_face_in_a_large_image_is_found_with_min_face(truth):
    """A 32-px face on a 3000x2000 canvas: lost at the image's 640-px view, found by tiles."""
    image, face = truth[0]
    crop, origin = tight_crop(image, face, 1.3)
    s = 32 / face.size_px
    small = cv2.resize(crop, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    canvas = np.full((2000, 3000, 3), 90, np.uint8)
    canvas += np.random.default_rng(0).integers(0, 40, canvas.shape, dtype=np.uint8)
    x0, y0 = 2100, 1300
    canvas[y0 : y0 + small.shape[0], x0 : x0 + small.shape[1]] = small
    nose = (face.landmarks[2] - origin) * s + [x0, y0]
    assert not FaceDetector("scrfd").detect(canvas)
    found = FaceDetector("scrfd", min_face=32).detect(canvas)
    assert len(found) == 1
    assert np.linalg.norm(found[0].landmarks[2] - nose) < 4


def test_aligned_face_reproduces_a_muflow_crop(face_detector, astronaut):
    face = face_detector.faces(astronaut)[0]
    again = aligned_face(face.crop, "muflow", 256, 1.5)
    np.testing.assert_array_equal(again.crop, face.crop)  # same size and context: the identity
    big, _, _ = align(astronaut, face.landmarks, 512, 1.5)
    again = aligned_face(big, "muflow", 256, 1.5)
    assert np.abs(again.crop.astype(float) - face.crop).mean() < 3  # a 2x area reduction, nothing else
    assert again.box.tolist() == [0, 0, 512, 512] and np.isnan(again.det_score) and again.scale == 0.5


@pytest.mark.parametrize("convention", ALIGNED_CONVENTIONS)
def test_aligned_conventions_land_on_the_template(convention, face_detector, astronaut):
    """A crop made with a convention's landmarks, re-aligned, shows the face where align() would."""
    face = face_detector.faces(astronaut)[0]
    M = similarity(face.landmarks, aligned_landmarks(300, 300, convention))
    crop = cv2.warpAffine(astronaut, M, (300, 300), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101)
    again = aligned_face(crop, convention)
    # compare where the convention's crop saw real pixels (a wide template sees more than arcface's)
    inner = slice(96, 160)
    assert np.abs(again.crop[inner, inner].astype(float) - face.crop[inner, inner]).mean() < 4


def test_faces_in_file_aligned_skips_detection(tmp_path, astronaut):
    from conftest import write_rgb

    path = write_rgb(tmp_path / "crop.png", cv2.resize(astronaut[40:300, 120:380], (256, 256)))
    res = faces_in_file(path, None, FaceFinding(aligned="muflow"))
    assert res.status == "ok" and len(res.faces) == 1 and res.faces[0].crop.shape == (256, 256, 3)


def test_the_alignment_template_is_insightfaces_arcface_template():
    """faces/align.py keeps the template in float64 (insightface's copy is float32): the same five points."""
    from insightface.utils.face_align import arcface_dst

    from muflow_cli.faces.align import ARCFACE_112

    np.testing.assert_array_equal(ARCFACE_112.astype(np.float32), arcface_dst)


# --- one class per network (faces/networks.py) ----------------------------------------------


def test_every_detector_name_has_its_network():
    from muflow_cli.choices import FACE_DETECTORS
    from muflow_cli.faces.networks import NETWORKS

    assert tuple(NETWORKS) == FACE_DETECTORS
    assert [(n.upsample, n.large_pass) for n in NETWORKS.values()] == [(True, "always"), (False, "fallback")]
    assert FaceDetector("yunet").large_pass == "fallback" and FaceDetector("scrfd", large_pass="off").large_pass == "off"


@pytest.mark.parametrize("shape", [(640, 640), (448, 640), (320, 320), (1024, 736)])
def test_scrfd_decodes_its_outputs_as_insightface_does(face_detector, t1_rgb, shape):
    """networks.Scrfd reimplements insightface's SCRFD decoding (without importing insightface): same
    session, same canvas, the same boxes, scores and landmarks, bit for bit."""
    from insightface.model_zoo.scrfd import SCRFD

    net = face_detector._net
    ref = SCRFD(model_file=None, session=net._session)
    ref.det_thresh = net.threshold
    h, w = shape
    canvas = np.zeros((h, w, 3), np.uint8)
    img = cv2.resize(t1_rgb[..., ::-1], (w * 3 // 4, h * 3 // 4))
    canvas[h // 8 : h // 8 + img.shape[0], w // 8 : w // 8 + img.shape[1]] = img
    det, kps = ref.detect(canvas, input_size=(w, h))
    rows = net.run(canvas)
    assert len(rows) == len(det) > 0
    for (box, score, kp), b, k in zip(rows, det, kps):
        np.testing.assert_array_equal(box, b[:4])
        assert score == float(b[4])
        np.testing.assert_array_equal(kp, k)


def test_iou_matrix_takes_one_box_or_many():
    from muflow_cli.faces.boxes import iou_matrix

    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], float)
    np.testing.assert_array_equal(iou_matrix(boxes[0], boxes), iou_matrix(boxes, boxes)[:1])
    np.testing.assert_allclose(iou_matrix(boxes[0], boxes)[0], [1.0, 50 / 150, 0.0])
