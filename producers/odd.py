"""`python -m producers.odd`: the producer for odd row ids (partition 1 of 2)."""

from producers import command

main = command(index=1, of=2)

if __name__ == "__main__":
    main()
