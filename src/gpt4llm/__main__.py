from gpt4llm.cli import main

main()
