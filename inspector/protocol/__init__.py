"""The ZeroMQ contract: message schema, socket defaults, CURVE keys. Imports nothing else of inspector."""
