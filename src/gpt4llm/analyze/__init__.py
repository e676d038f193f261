"""Dataset statistics the paper plots: verb-noun pairs, lengths, duplicates (`gpt4llm analyze`,
in `analyze/stage.py`), and the building blocks `verbs`, `lengths`, `plots`, `report`
(duplicates are `gpt4llm.text.dedup`)."""
