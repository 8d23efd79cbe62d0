"""The chaos run: the four processes send a campaign to the mock endpoint while
it fails and hangs some sends, a random process is SIGKILLed every few
seconds, and a schedule of faults runs one after another: Redis refuses
writes for a few seconds, restarts empty, answers BUSY for a few seconds; the
endpoint answers odd bodies and Retry-After texts; MySQL restarts; the
endpoint trickles its answers past the request deadline. At the end one
table says whether anything was lost or sent again without a reason.

The run owns its services: a private redis-server without persistence (so a
restart comes back empty) and a private MariaDB in a temporary directory, both
on free ports, so stopping them harms nothing else. Run it with
`scripts/chaos`; `--help` lists the knobs.

A repeat has a reason (README, "The delivery guarantee") in three cases only:
  * a consumer was SIGKILLed after the endpoint answered 2xx for rows of its
    partition that MySQL did not yet show as sent: those rows are "exposed"
    and each may be sent once more;
  * Redis restarted empty while jobs were leased: each may be sent once more;
  * the endpoint took a message but its answer never arrived in time (it
    trickled past WHATSAPP_TIMEOUT, so the send counts as a timeout and is
    retried with the same key): each such answer allows one more send.
Any other repeat, a pending row with nothing queued, or a row marked sent that
the endpoint never took fails the run.

One job a module: config (the fixed numbers and the options), campaign (the
table and its keys), endpoint (the mock), roles (the four processes),
faults (the held faults), schedule (their order), repeats (which repeats a
fault explains), verdict (the end state and the table), run (set-up, chaos,
settling) and cli (the command). The servers and child processes come from
the shared harness, common/testing/services.py and processes.py.
"""
