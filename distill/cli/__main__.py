from distill.cli.commands import main

main()
