from mec_cli.cli import entry

entry()
