/* placeholder: filled in by issue work in progress */
