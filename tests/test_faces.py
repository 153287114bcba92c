import cv2
import numpy as np
import pytest

from muflow_cli.faces import FaceDetector, align, faces_in_file, similarity, template


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
    crop, scale = align(img, face.landmarks, size=256, context=1.5)
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
    res = faces_in_file(bad, face_detector)
    assert res.status == "unreadable" and "not an image" in res.message
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((200, 300, 3), 200, np.uint8))
    res = faces_in_file(blank, face_detector)
    assert res.status == "no_face" and res.faces == [] and res.image_size == (300, 200)
