def main() -> None:
    print("aion")
