"""Reference clients of the daemon that a PLC integrator copies: subscriber, listener, control client."""
