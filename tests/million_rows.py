"""The million-row frame the kill tests push, built on import.

The kill tests' fork server imports this before it forks any pusher: each pusher then starts
with the frame already built, as it starts with dsnotebook already imported.
"""

from pusher import frame

MILLION = (1_000_000, 1)

frame(*MILLION)
