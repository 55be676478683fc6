"""The hub: network servers and the virtual fleet in, storage, backfill, alarms, downlinks, API.

Layout (data flows top to bottom):
  envelope.py   network JSON (ChirpStack v4, The Things Stack v3) -> Envelope / NetworkEvent
  sources.py    MQTT and in-process fleet adapters (HTTP webhooks are API routes)
  service.py    Hub: the ingest worker (ack after commit), downlink and backfill loops
  pipeline.py   sans-IO: decode, merge split reports, replayed records, resets, answers
  readings.py   where each measured value lands (the column table)
  store.py      SQL for SQLite and PostgreSQL; schema.py its migrations
  alarms.py, downlinks.py, backfill.py   lifecycle rules
  notify.py     alarm webhook / MQTT, Home Assistant discovery
  api.py        REST API, webhooks, metrics
  config.py     every option (command line, environment, TOML file)
Imports `cth01.protocol`; `cth01.device` only for the built-in fleet (sources.FleetSource).
"""
