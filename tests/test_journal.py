"""The resume journal: whole chunks only, changed files redone, other settings refused."""

import pytest

from muflow_cli.pipelines.journal import ResumeError, ScanJournal, journal_path


def test_a_recorded_chunk_is_found_again_with_its_extras(tmp_path):
    path = journal_path(tmp_path / "out.csv")
    assert path.name == ".out.csv.muflow-journal"
    j = ScanJournal(path, {"fpr": 0.05}, resume=False)
    j.record(0, [["a.jpg", 10, 1]], [{"file": "a.jpg"}], extras=[{"thumb": "x"}])
    j.record(1, [["b.jpg", 20, 2]], [{"file": "b.jpg"}])
    j.close()
    again = ScanJournal(path, {"fpr": 0.05}, resume=True)
    assert again.files_done == 2
    assert again.lookup(0, [["a.jpg", 10, 1]]) == ([{"file": "a.jpg"}], [{"thumb": "x"}])
    assert again.lookup(1, [["b.jpg", 20, 2]]) == ([{"file": "b.jpg"}], None)
    assert again.lookup(1, [["b.jpg", 20, 3]]) is None  # the file changed: redo the chunk
    assert again.lookup(2, []) is None
    again.close(remove=True)
    assert not path.exists()


def test_a_line_cut_short_by_a_crash_is_ignored(tmp_path):
    path = tmp_path / "j"
    j = ScanJournal(path, {}, resume=False)
    j.record(0, [["a", 1, 1]], [{"file": "a"}])
    j.close()
    with open(path, "a") as fh:
        fh.write('{"chunk": 1, "files": [["b", 1')  # killed mid-write
    again = ScanJournal(path, {}, resume=True)
    assert again.files_done == 1 and again.lookup(1, [["b", 1, 1]]) is None
    again.close()


def test_other_settings_are_refused_by_name(tmp_path):
    path = tmp_path / "j"
    ScanJournal(path, {"fpr": 0.05, "tail": "two"}, resume=False).close()
    with pytest.raises(ResumeError, match="fpr"):
        ScanJournal(path, {"fpr": 0.01, "tail": "two"}, resume=True)
    assert ResumeError("x").exit_code == 2
