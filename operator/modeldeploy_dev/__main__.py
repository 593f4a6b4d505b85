from modeldeploy_dev.cli import app

app(prog_name="modeldeploy-dev")
