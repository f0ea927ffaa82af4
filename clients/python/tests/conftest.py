"""Shared set-up of the client's tests: a live `cairn serve` at CAIRN_URL
(with CAIRN_API_KEY when it requires a key), and the collection
CAIRN_COLLECTION (default `clients`), into which the session uploads the
Orrin Point note and from which it removes it at the end.

scripts/test-server.sh runs these against a local collection and a cluster's.
Nothing here stands in for the server: without CAIRN_URL the tests fail."""

import os

import pytest

from cairn_client import Cairn, CairnError

URL = os.environ.get("CAIRN_URL", "")
KEY = os.environ.get("CAIRN_API_KEY") or None
COLLECTION = os.environ.get("CAIRN_COLLECTION", "clients")

NOTE_NAME = "orrin-point.md"
NOTE = """# Orrin Point Lighthouse

## History

The Orrin Point lighthouse was first lit in 1893. Its keeper for forty years was
Mabel Torvik, who logged every ship that passed the point.

## The light

The lamp flashes white twice every fifteen seconds and can be seen 22 nautical
miles out to sea.
"""
KEEPER_QUERY = "Who was the keeper of the Orrin Point lighthouse?"
YEAR_QUESTION = "When was the Orrin Point lighthouse first lit?"


@pytest.fixture(scope="session")
def cairn():
    assert URL, "set CAIRN_URL to a running `cairn serve` (scripts/test-server.sh does)"
    with Cairn(URL, api_key=KEY, collection=COLLECTION, timeout=600) as c:
        yield c


@pytest.fixture(scope="session")
def note(cairn):
    """The Orrin Point note, uploaded as JSON text and ingested; removed at
    the end of the session."""
    try:
        if any(d.name == NOTE_NAME for d in cairn.documents()):
            cairn.remove(NOTE_NAME)  # left by an interrupted run
    except CairnError as e:
        if e.status != 404:  # no such collection yet: the upload creates it
            raise
    job = cairn.upload(name=NOTE_NAME, text=NOTE)
    assert job.state == "done" and job.collection == COLLECTION, job
    assert job.documents_added + job.documents_updated == 1 and job.chunks_added >= 1, job
    yield NOTE_NAME
    try:
        cairn.remove(NOTE_NAME)
    except CairnError as e:
        if e.status != 404:
            raise
