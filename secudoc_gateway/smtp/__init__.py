"""
SMTP in: ``session`` is the sans-I/O ESMTP server state, ``protocol``
its Twisted adapter.
"""
