"""moto_server with one request at a time.

moto's TransactWriteItems applies its items one by one and rolls back by
restoring a copy of the tables taken when it started. Under moto's threaded
server that is not isolated: a transaction that fails restores a snapshot that
can hold another request's half-applied writes (or drop its finished ones).
DynamoDB itself is serializable, so the tests serialize moto's requests to get
the same guarantee; the server stays threaded so keep-alive connections work.

Usage: python scripts/moto_server.py -H 127.0.0.1 -p PORT  (moto_server's flags)
"""

import threading

import moto.server
from moto.moto_server.werkzeug_app import DomainDispatcherApplication

_LOCK = threading.Lock()
_call = DomainDispatcherApplication.__call__


def _serialized(self, environ, start_response):
    with _LOCK:
        # Materialize the body inside the lock: the backend work may be lazy.
        return list(_call(self, environ, start_response))


DomainDispatcherApplication.__call__ = _serialized

if __name__ == "__main__":
    moto.server.main()
