"""Repository-wide pytest setup: notebooks run at the smoke profile unless told otherwise."""
import os

os.environ.setdefault("L2L_PROFILE", "smoke")
os.environ.setdefault("L2L_DATA", os.path.join(os.path.dirname(__file__), "..", "shared", "data"))
# smoke-profile outputs go to a scratch folder, never into the committed results/
os.environ.setdefault("L2L_RESULTS", os.path.join(os.path.dirname(__file__), "_build", "test-results"))
