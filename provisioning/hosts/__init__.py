"""Host configuration over SSH, shaped as facts -> operations -> executor.

facts: a command and a pure parser of its output. operations: compare facts with the
desired state and return only the actions needed, or why nothing is. executor: runs
actions on every host in parallel and reports per host and step; it decides nothing.
"""
