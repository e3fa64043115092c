"""The window's task modes (summarize, translate, code help, extract JSON) and the prompt template editor."""
