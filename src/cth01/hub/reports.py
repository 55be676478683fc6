"""Reports: a month's energy bill per channel and tenant, and the fleet overview.

Owns: the monthly energy report — each channel's energy of a local calendar month (the
device's own monthly summary where it sent one for that month, else the counters in its
readings), the tenant it bills to (the channel's, else the device's, else "(unassigned)"),
its cost under a tariff (flat; or time-of-use, split into bands by the local time of each
reading), tenant totals (with the tariff's standing charge once per tenant) and the overall
total, as JSON and as CSV rows; and the fleet overview — one line per device with its status
(never / alarm / offline / online), power now, energy today and completeness.

Time-of-use split (an approximation, documented in docs/storage.md): a channel's energy
between two consecutive readings is given to the band in force at the later reading's local
time, so an interval that crosses a band boundary counts entirely in the band where it ends
(at a 10-minute reporting interval, at most 10 minutes of energy per boundary move). For a
device summary the bands found in the readings are scaled to the summary's total.

Must never: hold SQL (the store does) or know HTTP (the API does).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any
from zoneinfo import ZoneInfo

from .store import Counter, Store
from .tariff import (
    Tariff,
    day_bounds,
    energy_cost,
    local_date,
    month_bounds,
    offset_segments,
)

UNASSIGNED = "(unassigned)"
OFFLINE_AFTER_INTERVALS = 3  # a device unheard for 3 reporting intervals is offline
ENERGY_COLUMN = "imported_active_wh"


def _r(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)


def energy_report(store: Store, *, year: int, month: int, zone: ZoneInfo,
                  tariff: Tariff | None = None, dev_euis: Sequence[str] | None = None
                  ) -> dict[str, Any]:
    """The monthly energy report (see the module note) of the local month `year-month`."""
    start, end = month_bounds(year, month, zone)
    counters = {(c.dev_eui, c.channel): c for c in
                store.counters(start=start, end=end, column=ENERGY_COLUMN, dev_euis=dev_euis)}
    summaries = store.monthly_summaries(end=end, column=ENERGY_COLUMN, dev_euis=dev_euis)
    bands_wh = _bands(store, tariff, list(counters.values()), start, end, zone)
    devices = {d["dev_eui"]: d for d in store.devices()}
    channels = store.channels()
    rows = []
    for eui, ch in sorted(set(counters) | set(summaries)):
        device = devices.get(eui, {})
        named = channels.get((eui, ch), {})
        if (eui, ch) in summaries:
            wh, source = summaries[(eui, ch)], "device_summary"
        else:
            wh, source = counters[(eui, ch)].energy, "computed"
        bands = bands_wh.get((eui, ch), {})
        if source == "device_summary" and bands:
            measured = sum(bands.values())
            bands = {b: v * wh / measured for b, v in bands.items()} if measured else {}
        kwh = wh / 1000
        bands_kwh = {b: v / 1000 for b, v in bands.items()}
        rows.append({"dev_eui": eui, "device_name": device.get("name"), "channel": ch,
                     "circuit": named.get("circuit"),
                     "tenant": named.get("tenant") or device.get("tenant") or UNASSIGNED,
                     "energy_kwh": _r(kwh), "source": source,
                     "cost": _r(energy_cost(tariff, kwh, bands_kwh)) if tariff else None,
                     "bands": {b: _r(v) for b, v in bands_kwh.items()}})
    tenants = []
    standing = (tariff.standing_charge_per_month or 0.0) if tariff else 0.0
    for name in sorted({r["tenant"] for r in rows}):
        mine = [r for r in rows if r["tenant"] == name]
        costs = [r["cost"] for r in mine]
        cost = None if tariff is None or None in costs else sum(costs) + standing
        tenants.append({"tenant": name, "energy_kwh": _r(sum(r["energy_kwh"] for r in mine)),
                        "cost": _r(cost)})
    tenant_costs = [t["cost"] for t in tenants]
    total_cost = None if tariff is None or None in tenant_costs else sum(tenant_costs)
    return {"month": f"{year:04d}-{month:02d}", "timezone": zone.key, "start": start,
            "end": end, "tariff": tariff.to_dict() if tariff else None, "channels": rows,
            "tenants": tenants,
            "total": {"energy_kwh": _r(sum(r["energy_kwh"] for r in rows)),
                      "cost": _r(total_cost)},
            "currency": tariff.currency if tariff else None}


def _bands(store: Store, tariff: Tariff | None, counters: list[Counter], start: int, end: int,
           zone: ZoneInfo) -> dict[tuple[str, int], dict[str, float]]:
    """(dev_eui, channel) -> {band: Wh} of a time-of-use tariff ({} otherwise)."""
    if tariff is None or tariff.kind != "tou" or not counters:
        return {}
    segments = tariff.segments()
    slots = store.energy_by_week_slot(counters, start=start, end=end, column=ENERGY_COLUMN,
                                      offsets=offset_segments(start, end, zone),
                                      edges=[b for _, b, _ in segments])
    eui_of = {c.device_id: c.dev_eui for c in counters}
    out: dict[tuple[str, int], dict[str, float]] = {}
    for (did, ch), by_slot in slots.items():
        bands = out.setdefault((eui_of[did], ch), {})
        for slot, wh in by_slot.items():
            band = segments[slot][2]
            bands[band] = bands.get(band, 0.0) + wh
    return out


def report_csv_rows(report: dict[str, Any]) -> tuple[list[str], Iterator[list[Any]]]:
    """(header, rows) of the report as CSV: one row per channel (`kind` channel), then one
    per tenant and the total (with the tariff's standing charge in their cost)."""
    bands = list(report["tariff"]["bands"]) if report["tariff"] and \
        report["tariff"]["kind"] == "tou" else []
    names = [b["name"] for b in bands]
    header = ["kind", "month", "dev_eui", "device_name", "channel", "circuit", "tenant",
              "energy_kwh", "source", "cost", "currency", *(f"kwh_{n}" for n in names)]
    month, currency = report["month"], report["currency"]

    def rows() -> Iterator[list[Any]]:
        for r in report["channels"]:
            yield ["channel", month, r["dev_eui"], r["device_name"], r["channel"],
                   r["circuit"], r["tenant"], r["energy_kwh"], r["source"], r["cost"], currency,
                   *(r["bands"].get(n) for n in names)]
        for t in report["tenants"]:
            yield ["tenant", month, "", "", "", "", t["tenant"], t["energy_kwh"], "", t["cost"],
                   currency, *("" for _ in names)]
        total = report["total"]
        yield ["total", month, "", "", "", "", "", total["energy_kwh"], "", total["cost"],
               currency, *("" for _ in names)]

    return header, rows()


def device_status(row: dict[str, Any], now: float) -> str:
    """never (not heard or joined), alarm (an active alarm), offline (unheard for
    OFFLINE_AFTER_INTERVALS reporting intervals) or online."""
    if row["last_seen"] is None and row["joined_at"] is None:
        return "never"
    if row["active_alarms"]:
        return "alarm"
    heard = row["last_seen"] if row["last_seen"] is not None else row["joined_at"]
    if now - heard > OFFLINE_AFTER_INTERVALS * row["interval_s"]:
        return "offline"
    return "online"


def overview(store: Store, *, now: float, zone: ZoneInfo) -> list[dict[str, Any]]:
    """One line per device: dev_eui, name, site, tenant, status, last_seen, total_power_w,
    today_kwh (since local midnight; None without readings today), active_alarms,
    completeness (readings of the last 24 h against those expected; None without any)."""
    day_start = day_bounds(local_date(now, zone), zone)[0]
    out = []
    for r in store.overview(now=now, day_start=day_start):
        out.append({"dev_eui": r["dev_eui"], "name": r["name"], "site": r["site"],
                    "tenant": r["tenant"], "status": device_status(r, now),
                    "last_seen": r["last_seen"], "interval_s": r["interval_s"],
                    "total_power_w": r["power_w"],
                    "today_kwh": _r(r["today_wh"] / 1000) if r["today_wh"] is not None
                    else None,
                    "active_alarms": r["active_alarms"],
                    "completeness": _r(r["completeness"], 4)})
    return out


__all__ = ["UNASSIGNED", "device_status", "energy_report", "overview", "report_csv_rows"]
