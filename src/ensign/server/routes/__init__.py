"""The routes of ``ensign server``: one ``router`` per module."""
