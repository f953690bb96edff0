"""The operator station: a live web view of one or more lines, the review of every reject, drift alarms.

A subscriber beside ``client/``: it imports protocol, client, errors, config and calibrate.record; the daemon
(``stream/``) never imports it. ``inspector station`` runs it; docs/station.md describes it.
"""
