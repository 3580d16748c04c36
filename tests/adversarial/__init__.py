"""The adversarial campaign of issue 19, kept as tests: one test per attack or fault.

Each test forges, swaps or damages what is in the store the way an attacker or a
crash could, then checks that the suite refuses it (exit code 2 naming the version
and the file), never turns it against other versions, and that ``mlops gc --check``
reports it.
"""
