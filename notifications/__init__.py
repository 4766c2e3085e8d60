"""How words reach people: channels (console, email, WeCom) and message templates."""
