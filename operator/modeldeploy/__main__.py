from modeldeploy.cli import main

main()
