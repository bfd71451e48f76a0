"""Adapters between the book's diagnostics and other RL libraries, each imported on use:
``rldebug.integrations.sb3`` for stable-baselines3 and sb3-contrib."""
