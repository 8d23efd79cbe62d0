"""Driver errors as the operator reads them: one line that names what happened."""

import pymysql

from common.errors import ServiceUnavailable
from common.settings import MySQLTarget
from common.store.campaign import translate_error

TARGET = MySQLTarget("db.example", 3306, "campaign", "s3cret", "campaign")


def test_a_deadlock_is_a_lock_conflict_to_write_again_not_an_unreachable_server():
    for code, message in [
        (1213, "Deadlock found when trying to get lock; try restarting transaction"),
        (1205, "Lock wait timeout exceeded; try restarting transaction"),
    ]:
        error = translate_error(pymysql.OperationalError(code, message), TARGET)
        assert isinstance(error, ServiceUnavailable)  # written again on the next cycle
        assert "lock conflict" in str(error) and "unreachable" not in str(error) and "s3cret" not in str(error)


def test_a_lost_connection_is_an_unreachable_server():
    error = translate_error(pymysql.OperationalError(2013, "Lost connection to MySQL server during query"), TARGET)
    assert isinstance(error, ServiceUnavailable) and "is unreachable" in str(error)
