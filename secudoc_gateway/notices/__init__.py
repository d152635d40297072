"""
What the gateway itself says to people, in Dutch and English: ``texts``
holds every word and how dates, times and sizes read; ``banner`` the
banner and the HTML blocks the messages share; ``mails`` the transfer
template, the messages made while a message passes and their header
values; ``downloads`` the messages around a download.  Plain Python: the
callers send what these make.
"""
