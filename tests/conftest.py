"""The test suite runs in the smoke profile, offline, with silent progress bars."""
import os

os.environ["COURSE_PROFILE"] = "smoke"
os.environ["TQDM_DISABLE"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")
