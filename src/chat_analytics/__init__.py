"""chat-analytics: a local-first analytics warehouse for customer-support chats."""

__version__ = "0.1.0"
