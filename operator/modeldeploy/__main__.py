from modeldeploy.cli import app

app(prog_name="modeldeploy")
