"""Every Redis key the project uses, in one place. Each name starts with the
optional KEY_PREFIX; <N>:<K> is partition K of N.

  job:<id>                 the job's payload, set with SET NX so a row is queued once
  due:<N>:<K>              sorted set: row id -> time (ms, Redis's clock) it may next be claimed
  leased:<N>:<K>           hash: row id -> lease end, for jobs claimed and not yet finished
                           or put back; a claim finding its row here is a reclaim
  stats:<N>:<K>            hash of counters: sent, failed, retried, dropped, reclaimed
  scanned:<N>:<K>          marker set by the first full read of the partition; gone means
                           Redis lost the queue and producers read every pending row again
  sent_at:<N>:<K>:<t>      rows sent in the RATE_BUCKET seconds from t * RATE_BUCKET
  sent_per_minute:<N>:<K>  hash: minute (unix time // 60) -> rows sent in it, kept a day
  sending_since:<N>:<K>    time (ms) sends began, gone after a minute without one
  senders                  set of sender names, for status to find their breakers
  sender:<name>:breaker    hash: the sender's circuit breaker
  sender:<name>:pace       the sender's GCRA slot (theoretical arrival time, µs)
  sender:<name>:recipients sorted set: phone -> time (ms) it was first sent to in the last 24 h
  sender:<name>:daily_limit  the DAILY_LIMIT its consumers run with, for status
  sticky                   hash: phone -> the sender it fell over to (STICKY_FALLBACK)
  paused, paused:<N>:<K>   the campaign's and one partition's pause switch
  lock:<role>:<N>:<K>      run lock of --once and --exclusive runs
  processes                sorted set: process key -> last heartbeat (unix time)
  process:<host>:<pid>:<role>  hash: one process's heartbeat
  webhook:inbox            list: webhook events acknowledged and not yet written to MySQL
  webhook:drain            lock held by the web service writing the inbox to MySQL
"""


def partition_part(partition) -> str:
    return f"{partition.of}:{partition.index}"


def job_prefix(prefix: str) -> str:
    return f"{prefix}job:"


def due(prefix: str, partition) -> str:
    return f"{prefix}due:{partition_part(partition)}"


def leased(prefix: str, partition) -> str:
    return f"{prefix}leased:{partition_part(partition)}"


def stats(prefix: str, partition) -> str:
    return f"{prefix}stats:{partition_part(partition)}"


def scanned(prefix: str, partition) -> str:
    return f"{prefix}scanned:{partition_part(partition)}"


def sent_at_prefix(prefix: str, partition) -> str:
    return f"{prefix}sent_at:{partition_part(partition)}:"


def sent_per_minute(prefix: str, partition) -> str:
    return f"{prefix}sent_per_minute:{partition_part(partition)}"


def sending_since(prefix: str, partition) -> str:
    return f"{prefix}sending_since:{partition_part(partition)}"


def senders(prefix: str) -> str:
    return f"{prefix}senders"


def breaker(prefix: str, name: str) -> str:
    return f"{prefix}sender:{name}:breaker"


def pace(prefix: str, name: str) -> str:
    return f"{prefix}sender:{name}:pace"


def recipients(prefix: str, name: str) -> str:
    return f"{prefix}sender:{name}:recipients"


def daily_limit(prefix: str, name: str) -> str:
    return f"{prefix}sender:{name}:daily_limit"


def sticky(prefix: str) -> str:
    return f"{prefix}sticky"


def paused(prefix: str, partition=None) -> str:
    return f"{prefix}paused" if partition is None else f"{prefix}paused:{partition_part(partition)}"


def run_lock(prefix: str, role: str, partition) -> str:
    return f"{prefix}lock:{role}:{partition_part(partition)}"


def processes(prefix: str) -> str:
    return f"{prefix}processes"


def process(prefix: str, host: str, pid: int, role: str) -> str:
    return f"{prefix}process:{host}:{pid}:{role}"


def webhook_inbox(prefix: str) -> str:
    return f"{prefix}webhook:inbox"


def webhook_drain(prefix: str) -> str:
    return f"{prefix}webhook:drain"
