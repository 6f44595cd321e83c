"""Domain models shared by every layer of CodeBlue.

This package sits at the bottom: activities, workflows, the worker and the
starters import it; it imports none of them.
"""
