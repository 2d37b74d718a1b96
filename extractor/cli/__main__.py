from extractor.cli.commands import main

main()
