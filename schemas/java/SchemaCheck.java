// How a Java consumer loads these schemas with Apache Avro, checked: loads schemas/*.avsc four
// ways and prints, for each, the fingerprints of the five top-level schemas (hex of the
// single-object header's bytes 2-9, as in schemas/README.md) or the error. Java 17+, no build:
//
//   mvn -q -f schemas/java/pom.xml dependency:build-classpath -Dmdep.outputFile=/tmp/avro.cp
//   java -cp "$(cat /tmp/avro.cp)" schemas/java/SchemaCheck.java schemas [DIR]
//
// DIR (optional) holds the self-contained schemas printed by aion.codec.Codec().schema_json(kind),
// one per file. Exits 1 when a way the README says works does not, or gives other fingerprints.
import java.nio.file.*;
import java.util.*;
import java.util.stream.*;
import org.apache.avro.*;

public class SchemaCheck {
  static final List<String> TOP = List.of("aion.events.Event", "aion.events.EventKey",
      "aion.commands.Command", "aion.commands.Reply", "aion.tasks.TaskMessage");

  static final Set<String> fingerprintsOfWaysThatWork = new HashSet<>();
  static boolean failed = false;

  public static void main(String[] args) throws Exception {
    List<Path> files = list(Paths.get(args.length > 0 ? args[0] : "schemas"), ".avsc");
    List<Path> reversed = new ArrayList<>(files);
    Collections.reverse(reversed);
    System.out.println("Apache Avro " + Schema.class.getPackage().getImplementationVersion()
        + ", Java " + System.getProperty("java.version") + ", " + files.size() + " .avsc files");

    // Does not work: a Schema.Parser needs every named type before the first file that uses it.
    for (List<Path> order : List.of(files, reversed)) {
      report(false, "1. one Schema.Parser fed every file, " + name(order, files) + " order", () -> {
        Schema.Parser parser = new Schema.Parser();
        for (Path f : order) parser.parse(f.toFile());
        return parser.getTypes();
      });
    }
    // Works, in any order: references are resolved when a schema is asked for.
    for (List<Path> order : List.of(files, reversed)) {
      report(true, "2. one SchemaParser fed every file, " + name(order, files) + " order", () -> {
        SchemaParser parser = new SchemaParser();
        Map<String, SchemaParser.ParseResult> parsed = new HashMap<>();
        for (Path f : order) parsed.put(f.getFileName().toString().replace(".avsc", ""), parser.parse(f));
        Map<String, Schema> found = new HashMap<>();
        for (String t : TOP) {
          Schema schema = parsed.get(t).mainSchema();  // ask once every file is parsed
          @SuppressWarnings("deprecation")
          Schema resolved = parser.resolve(parsed.get(t));  // 1.12: deprecated, the same schema
          if (!schema.equals(resolved)) throw new IllegalStateException("resolve() differs: " + t);
          found.put(t, schema);
        }
        return found;
      });
    }
    // Works: a fresh Schema.Parser per file, seeded with the types known so far; a file that
    // names a type not known yet is tried again later.
    report(true, "3. a fresh Schema.Parser per file, seeded with the types already known", () -> {
      Map<String, Schema> known = new HashMap<>();
      Deque<Path> todo = new ArrayDeque<>(files);
      int misses = 0;
      while (!todo.isEmpty()) {
        Path f = todo.poll();
        try {
          Schema.Parser parser = new Schema.Parser();
          parser.addTypes(known.values());
          Schema schema = parser.parse(f.toFile());
          known.put(schema.getFullName(), schema);
          misses = 0;
        } catch (AvroRuntimeException e) {  // AvroTypeException: Undefined schema: ...
          todo.add(f);
          if (++misses > todo.size()) throw e;
        }
      }
      return known;
    });
    if (args.length > 1) {
      // Works: each self-contained schema alone.
      report(true, "4. the self-contained schemas (Codec().schema_json), each parsed alone", () -> {
        Map<String, Schema> found = new HashMap<>();
        for (Path f : list(Paths.get(args[1]), "")) {
          Schema schema = new Schema.Parser().parse(f.toFile());
          found.put(schema.getFullName(), schema);
        }
        return found;
      });
    }
    if (fingerprintsOfWaysThatWork.size() != 1) {
      System.out.println("the ways that work disagree on the fingerprints");
      failed = true;
    }
    System.exit(failed ? 1 : 0);
  }

  interface Attempt {
    Map<String, Schema> run() throws Exception;
  }

  static void report(boolean works, String title, Attempt attempt) {
    String outcome;
    try {
      String fingerprints = fingerprints(attempt.run());
      if (works) fingerprintsOfWaysThatWork.add(fingerprints);
      outcome = "OK\n" + fingerprints;
    } catch (Exception e) {
      failed |= works;
      outcome = "FAILS: " + e.getClass().getSimpleName() + ": " + e.getMessage();
    }
    System.out.println(title + ": " + outcome);
  }

  static String fingerprints(Map<String, Schema> schemas) {
    StringBuilder out = new StringBuilder();
    for (String t : TOP) {
      Schema s = schemas.get(t);
      if (s == null) throw new IllegalStateException(t + " not found");
      long fp = SchemaNormalization.parsingFingerprint64(s);
      out.append(String.format("   %-24s %016x%n", t, Long.reverseBytes(fp)));  // little-endian
    }
    return out.toString().stripTrailing();
  }

  static List<Path> list(Path dir, String suffix) throws Exception {
    try (Stream<Path> s = Files.list(dir)) {
      return s.filter(p -> Files.isRegularFile(p) && p.toString().endsWith(suffix)).sorted()
          .collect(Collectors.toList());
    }
  }

  static String name(List<Path> order, List<Path> alphabetical) {
    return order == alphabetical ? "alphabetical" : "reverse";
  }
}
