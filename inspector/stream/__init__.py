"""The line daemon: sources, pipeline, ZeroMQ publisher and control, audit trail, metrics (`inspector run`)."""
