"""
The one normaliser: configuration strict, message data lenient, both
giving the same IDNA 2008 form.
"""

from twisted.trial.unittest import SynchronousTestCase

from secudoc_gateway.addresses import addressKey, configDomain, domainKey, isMailbox, parseIP, splitAddress


class DomainTests(SynchronousTestCase):
    def test_domainKey(self) -> None:
        self.assertEqual(domainKey("Bücher.Example."), "xn--bcher-kva.example")
        self.assertEqual(domainKey("EX_AMPLE.test"), "ex_ample.test")
        # IDNA refuses it: compared lowercased rather than raising.
        self.assertEqual(domainKey("bü_cher.test"), "bü_cher.test")

    def test_idna2008NotTransitional(self) -> None:
        """
        ß is its own letter under IDNA 2008: ``straße.de`` is not
        ``strasse.de`` (IDNA 2003's answer), in configuration and in
        messages alike.
        """
        self.assertEqual(domainKey("straße.de"), "xn--strae-oqa.de")
        self.assertEqual(configDomain("straße.de"), "xn--strae-oqa.de")
        self.assertEqual(addressKey("a@straße.de"), "a@xn--strae-oqa.de")

    def test_configDomainStrict(self) -> None:
        self.assertEqual(configDomain("Example.TEST."), "example.test")
        self.assertRaises(ValueError, configDomain, "")
        self.assertRaises(ValueError, configDomain, "a..b")

    def test_configAndMessageAgree(self) -> None:
        for name in ["Example.test", "bücher.example", "xn--bcher-kva.example", "ÉCOLE.fr."]:
            self.assertEqual(configDomain(name), domainKey(name))


class AddressTests(SynchronousTestCase):
    def test_forms(self) -> None:
        self.assertEqual(addressKey(" Alice@Example.TEST "), "alice@example.test")
        self.assertEqual(addressKey("a@Bücher.Example."), "a@xn--bcher-kva.example")
        self.assertEqual(addressKey('"A@B"@Example.test'), '"a@b"@example.test')
        self.assertEqual(addressKey(""), "")
        self.assertEqual(addressKey("Postmaster"), "postmaster")
        # An unencodable domain is kept (lower-cased), not an error.
        self.assertEqual(addressKey("a@X..Y"), "a@x..y")

    def test_split(self) -> None:
        self.assertEqual(splitAddress('"a@b"@Bücher.test'), ('"a@b"', "xn--bcher-kva.test"))
        self.assertEqual(splitAddress(" postmaster "), ("postmaster", ""))


class IPTests(SynchronousTestCase):
    def test_mappedIPv4(self) -> None:
        self.assertEqual(str(parseIP("::ffff:192.0.2.1")), "192.0.2.1")
        self.assertEqual(str(parseIP("2001:db8::1")), "2001:db8::1")
        self.assertIsNone(parseIP("unix"))

    def test_isMailbox(self) -> None:
        """The one check of an address the portal takes in: a plain mailbox, a dotted domain."""
        for good in ("alice@example.test", "o'brien+tag@sub.example.test", "jörg@bücher.example", "a@xn--bcher-kva.test"):
            self.assertTrue(isMailbox(good), good)
        for bad in ("", "alice", "alice@localhost", "a@@b.test", '"a b"@x.test', "Alice <a@x.test>", "a b@x.test",
                    "a@-x.test", "a..b@x.test", "a@x.test,b@x.test", "a" * 65 + "@x.test", "a@" + "b" * 250 + ".test"):
            self.assertFalse(isMailbox(bad), bad)
