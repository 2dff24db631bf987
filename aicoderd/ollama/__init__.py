"""Deploying to a local Ollama through its real HTTP API."""
