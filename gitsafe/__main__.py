from gitsafe.cli import main

main()
