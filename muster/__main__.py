from muster.cli import app

app()
