from hubtools.cli import main

main()
