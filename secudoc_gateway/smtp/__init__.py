"""
SMTP in (``session`` sans-I/O, ``protocol`` adapter, ``replies``) and
out (``relay``: ``client`` byte work, ``connection`` adapter, ``pool``
of reusable connections, ``maildir``).
"""
