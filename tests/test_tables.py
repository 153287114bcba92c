import pandas as pd

from muflow_cli.outputs.tables import neutralise, write_table
from muflow_cli.pipelines.schema import SCHEMA, to_frame


def test_formula_cells_are_neutralised_in_csv(tmp_path):
    rows = [{"file": name, "status": "ok"} for name in ["=HYPERLINK(\"x\")", "+1", "-2", "@SUM(A1)", "plain.jpg"]]
    df = to_frame(rows, ["s4"])
    write_table(df, tmp_path / "t.csv", "csv")
    back = pd.read_csv(tmp_path / "t.csv")
    assert list(back["file"]) == ["'=HYPERLINK(\"x\")", "'+1", "'-2", "'@SUM(A1)", "plain.jpg"]
    assert neutralise(3.5) == 3.5


def test_schema_columns_come_first_and_in_order(tmp_path):
    df = to_frame([{"file": "a.jpg", "status": "no_face", "message": "no face found"}], ["s4", "s8"])
    assert list(df.columns) == list(SCHEMA) + ["score_s4", "score_s8"]
    write_table(df, tmp_path / "t.jsonl", "jsonl")
    assert not list(tmp_path.glob("*.part"))
    assert pd.read_json(tmp_path / "t.jsonl", lines=True)["status"][0] == "no_face"
