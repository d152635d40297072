"""
Out: handing a message to the tenant's relay target.  ``client`` is the
sans-I/O ESMTP byte work, ``connection`` its Twisted adapter, ``pool``
keeps connections for reuse, ``smtp`` the SMTP relay and ``relayFor``,
``maildir`` the demo and test target.
"""
