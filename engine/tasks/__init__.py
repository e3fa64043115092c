"""Tasks: chat, document questions, code help, summaries, translations: prompts and the logic each needs."""
