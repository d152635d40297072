"""Malware scanning by clamd (SPEC 10): the verdicts, the wire format, the Twisted client."""

from secudoc_gateway.scan.client import MAX_SCANS, ClamdError, FileScan, MessageScans, Scanner
from secudoc_gateway.scan.verdicts import FileVerdict, ScanResult, Verdict, worst

__all__ = ["MAX_SCANS", "ClamdError", "FileScan", "FileVerdict", "MessageScans", "ScanResult", "Scanner",
           "Verdict", "worst"]
