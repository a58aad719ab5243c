"""client.advisories: the security advisories a supplier's estate runs into (issue 23).

``documents`` reads the verified advisory targets through the session, ``matching`` indexes them
against CPL entries and images (pure), and ``exports`` writes CSAF 2.0 and OpenVEX (pure). The
estate check joins them to its groups and paths (client/estate/advisories.py).
"""
