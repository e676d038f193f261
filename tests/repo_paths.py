"""Where the tests, the repository and `../shared/data` are, and the fake API key, for test files at
any depth (import from here, not from conftest: a conftest.py in a subfolder takes its name)."""

from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SHARED_DATA = REPO.parent / "shared" / "data"

# the API key every fake endpoint is called with; tests check it never reaches an output
TEST_KEY = "sk-test-SECRET123abcdefXYZ"
