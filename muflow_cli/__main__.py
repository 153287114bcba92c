from muflow_cli.cli import app

app(prog_name="muflow")
