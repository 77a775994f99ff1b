from sharewheel.cli import main

main()
