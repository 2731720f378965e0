from mec_cli.cli import main

main()
