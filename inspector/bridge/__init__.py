"""Bridges from the daemon's ZeroMQ contract to the protocols a line speaks: OPC UA for PLCs, MQTT for MES.

Each bridge is a separate process (``inspector bridge --config FILE``): a subscriber of the daemon's PUB socket
and a client of its control socket on one side, a fieldbus server or client on the other. The daemon imports
nothing of this package, so a bridge can neither slow nor stop inspection.

- ``config.py``: the YAML file, loaded strictly into frozen dataclasses;
- ``link.py``: the ZeroMQ side (subscriber thread, liveness from heartbeats, Lazy Pirate control requests);
- ``handshake.py``: the PLC part handshake with its deadline, a pure state machine;
- ``opcua_space.py``, ``opcua.py``: the asyncua server (address space, security, the handshake's shell);
- ``certs.py``: OPC UA application certificates (``inspector keys --opcua``);
- ``buffer.py``: the store-and-forward buffer (pure) and its optional SQLite mirror;
- ``mqtt.py``: the paho-mqtt publisher;
- ``run.py``: runs the bridges of one file until SIGTERM.
"""
