"""Streaming MIME: parser, transfer decoders, names, rewrite plan."""
