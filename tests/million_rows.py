"""The million-row frame the kill tests push, built on import.

The fork server imports this before it forks any pusher: each pusher then starts with the frame
already built, as it starts with dsnotebook already imported. Nothing else imports it, so a test
process builds the frame only when a test compares with it.
"""

from pusher import MILLION, frame

frame(*MILLION)
